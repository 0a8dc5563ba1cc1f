"""`loom monitor`: drift and data quality over the prediction log, and accuracy with delayed labels."""
