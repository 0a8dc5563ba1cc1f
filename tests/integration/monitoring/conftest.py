"""Ray exports the replicas' metrics every 5 s in these tests (its default is every 10 s).

Read when pytest collects this folder, which is before the session's Ray starts: Ray's processes
take ``RAY_metrics_report_interval_ms`` from the environment they start with. Not lower: Ray keeps
a gauge for two report intervals after it was last set, and the replicas set their PSI gauges
every 5 s (``serving.drift.FLUSH_S``); at 1 s the gauges blink out between sets, and an alert's
``for`` restarts each time (measured). A session whose Ray started earlier keeps 10 s; the tests
then only wait longer.
"""

import os

os.environ.setdefault("RAY_metrics_report_interval_ms", "5000")
