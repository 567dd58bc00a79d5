"""edge-agent: the device daemon. It receives signed updates over MQTT, verifies and self-tests
them, swaps versions atomically, serves local inference, reports its status and rolls back on
its own.

    daemon          wiring and the main loop
    config*         agent.toml, validated (config_network, config_values)
    mqtt_link       the MQTT session (presence, Last Will, reconnects)
    reports         the status document and events; report_policy decides when (pure)
    health          probation's gate; metrics the Prometheus figures
    update/         the update state machine, transfer, TUF over MQTT, self-test
    serving/        the local inference API (HTTP and gRPC, Open Inference Protocol)
"""
