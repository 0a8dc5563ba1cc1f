"""The rollout controller: phases, analysis, promotion, rollback, audit log (heavy SDKs load lazily)."""
