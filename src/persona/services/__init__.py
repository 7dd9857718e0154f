"""Long-running service entry commands shared by the local stack and the containers."""
