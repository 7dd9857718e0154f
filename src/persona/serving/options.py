"""Choices of the scoring API's configuration, importable without loading the API: the settings
check them at start-up, the request contract when it is built."""

# What a request column that is neither a model input nor declared in the schema does
# (PERSONA_EXTRA_COLUMNS): refused, or accepted and reported as ignored.
EXTRA_COLUMNS = ("reject", "ignore")
