"""Customer data: persona catalogue, synthetic generator, schema, validation, storage."""
