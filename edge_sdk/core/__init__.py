"""The shared core: what the device and the host tools both read and write, with no heavy
dependency (no onnx, no TensorFlow, no console library). The agent imports only this package,
``edge_sdk.runtime`` and ``edge_sdk.errors`` from ``edge_sdk``.

    bundle.py        the bundle file format (zip, manifest, signatures)
    golden.py        golden test vectors and how they are checked
    fidelity.py      how close outputs stay to the source model's (pure numpy)
    tensors.py       tensor descriptions shared by build, manifest and runtime
    profiles.py      hardware profiles, loaded from TOML
    profile_image.py  a profile's [image] pre-processing and the --image-* overrides
    strict_toml.py   the one strict reader of agent.toml and profiles (stdlib, one-line errors)
    toml_schema.py   their JSON Schemas for editors, from the same dataclasses
    trust.py         trust decisions on bytes: the pinned root, signing, verifying
                     (pinned_root.py, signatures.py, tuf_checks.py hold the logic)
    trust_root.py    the pinned trust root on disk
    assignment.py    desired state: which version a device or group should run
    protocol.py      the status document, resting states and results (device <-> fleet)
    untrusted_json.py  JSON a device or a file sends: bounded reading, field by field
    topics.py        the MQTT topic layout
    broker_address.py  where the broker is: mqtt(s):// URLs, default ports, TLS files
    mqtt_client.py   the MQTT 5 client both sessions build from a broker address (TLS, no-delay)
    chunking.py      content-defined chunking of bundle files
    bench_job.py     the benchmark job a device runs for the operator
    atomic.py        crash-safe file writes
    userfile.py      reading a file the user named, boundedly
    jsondepth.py     JSON nesting depth, counted before parsing
    npy.py           .npy bytes to arrays and back
    entry.py, extras.py, interrupt.py    what both command-line tools share
"""
