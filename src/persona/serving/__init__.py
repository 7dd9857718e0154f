"""HTTP scoring service: model store, request parsing and the pandas-free fast path."""
