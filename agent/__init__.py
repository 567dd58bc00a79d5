"""edge-agent: the device daemon. For now: verify and self-test a bundle exactly as the daemon
will before a swap (MQTT delivery, state machine and serving come with the agent issue)."""
