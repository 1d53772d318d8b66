"""Many hosts through the engines people already run: Ansible collects each host's redacted
snapshot over SSH (`collect`), the controller audits the newest snapshot of every host with the same
rules (`report`), and Prometheus with Alertmanager watches each host's `stackaudit metrics`
(`prometheus`). stackaudit adds no agent, daemon or SSH fan-out of its own.
"""
