"""Test and benchmark support shared by ``tests/`` and ``bench/`` (not shipped).

Real servers on loopback (Mosquitto, the fleet's broker, nginx, SeaweedFS), agent helpers and
model factories. Product code (``edge_sdk``, ``agent``, ``converters``) never imports this
package, and ``bench/`` never imports ``tests/`` (tests/test_layout.py checks both).
"""
