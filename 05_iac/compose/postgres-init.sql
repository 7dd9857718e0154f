-- First start of the Compose `postgres` service: the databases of MLflow's registry and of
-- Mage, next to `persona` (project tables, drift history, scoring log) that POSTGRES_DB creates.
CREATE DATABASE persona_mlflow OWNER persona;
CREATE DATABASE persona_mage OWNER persona;
