"""Steps of a job: one small op per concept (see base.py for the contract, builtin.py for the list)."""
