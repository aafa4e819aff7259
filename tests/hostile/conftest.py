from tests.faults.scratch import scratch_county, transactional_db  # noqa: F401
