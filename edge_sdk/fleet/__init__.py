"""Operating the fleet over its broker (host only): publish, assign, roll out, watch, measure.

session.py         the operator's MQTT session with the broker
publish.py         publish a bundle into the repository and onto the broker; assign
publish_service.py ``fleet publish|assign`` as calls: the checks, what opens before the broker
publish_ledger.py  which chunks the broker has acknowledged (resumable publish)
stores.py          artifact stores (HTTP(S), S3) for a release's chunks
inventory.py       every device's retained status and presence, as the broker holds them
status.py          ``fleet status`` from the inventory: the table and its summary
rollout.py         canary rollouts, the pure decision core: the record and its plan
rollout_steps.py   the pure decision core: judging each wave, the record's next step
rollout_run.py     the shell around the core: the record on disk, the locks, the drive loop
rollout_service.py ``fleet rollout|rollback`` as calls, for the CLI and bench/bench_fleet.py
bench.py           the operator's half of a benchmark job
bench_service.py   ``fleet bench`` and ``build --measure-on`` as one call
"""
