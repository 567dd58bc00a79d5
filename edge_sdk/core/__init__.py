"""The shared core: what the device and the host tools both read and write, with no heavy
dependency (no onnx, no TensorFlow, no console library). The agent imports only this package,
``edge_sdk.runtime`` and ``edge_sdk.errors`` from ``edge_sdk``.

    bundle/          the bundle file format: manifest, reading hostile zips, version labels
    trust/           trust decisions on bytes: the pinned root, signing, verifying; root.json
    wire/            what crosses the broker between device and fleet: the status document
                     (protocol.py), topics, signed assignments, benchmark jobs, the broker
                     address and the MQTT 5 client both sides build
    golden.py        golden test vectors and how they are checked
    fidelity.py      how close outputs stay to the source model's (pure numpy)
    tensors.py       tensor descriptions shared by build, manifest and runtime
    profiles.py      hardware profiles, loaded from TOML (profile_image.py: their [image])
    strict_toml.py   the one strict reader of agent.toml and profiles (stdlib, one-line errors)
    toml_schema.py   their JSON Schemas for editors, from the same dataclasses
    host.py          what this machine is, and whether its timings stand in for the target's
    chunking.py      content-defined chunking of bundle files
    atomic.py        crash-safe file writes
    userfile.py      reading a file the user named, boundedly
    jsondepth.py     JSON nesting depth, counted before parsing
    npy.py           .npy bytes to arrays and back
    entry.py, extras.py, interrupt.py    what both command-line tools share
"""
