"""The wire contract: what crosses the broker between a device and the fleet's tools, in one
place both sides import (docs/protocol.md is its prose).

    protocol.py        the status document, resting states and result names: the agent
                       writes it, the fleet reads it back with the same type
    topics.py          the MQTT topic layout and the identifiers allowed in it
    assignment.py      desired state: which version a device or group should run, signed
    bench_job.py       the benchmark job a device runs for the operator, and its answer
    broker_address.py  where the broker is: mqtt(s):// URLs, default ports, TLS files
    mqtt_client.py     the MQTT 5 client both sessions build from a broker address
    untrusted_json.py  JSON a device or a file sends: bounded reading, field by field
"""
