"""Operating the bot: the settings report (`d1bot check`, `serve` at start) and the liveness
and readiness probes."""
