"""Operating the fleet over its broker (host only): publish, assign, roll out, watch, measure.

session.py         the operator's MQTT session with the broker
publish.py         publish a bundle into the repository and onto the broker; assign
publish_ledger.py  which chunks the broker has acknowledged (resumable publish)
stores.py          artifact stores (HTTP(S), S3) for a release's chunks
inventory.py       every device's retained status and presence, as the broker holds them
status.py          ``fleet status`` from the inventory: the table and its summary
rollout.py         canary rollouts, the pure decision core: the record and its plan
rollout_steps.py   the pure decision core: judging each wave, the record's next step
rollout_run.py     the rollout service: the record on disk, the waves, the gates
bench.py           the operator's half of a benchmark job
device_measure.py  what a benchmark job measures
"""
