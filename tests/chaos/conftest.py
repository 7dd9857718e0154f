"""The chaos suite: faults an operator meets, injected into real components.

Each test breaks a real run (``kill -9`` of a Mage worker at a block boundary, a terminated
PostgreSQL session, MLflow killed mid-registration, PostgreSQL restarted under API load) and
asserts what must hold after it and after the rerun: the production alias unchanged or fully
moved, no partial month, one current drift row per month, no RUNNING run without a live owner,
no orphan process, no session ``idle in transaction``, no failed API request.
"""
