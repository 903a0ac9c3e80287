-- Run once by the PostgreSQL image on an empty data volume (docker-entrypoint-initdb.d), as the
-- POSTGRES_USER of docker-compose.yml. One server, three databases:
--   fks      FKS's store (bars, runs, quarantine, ...; Optuna's studies); migrated by the first fks
--            command, which also turns bars into a TimescaleDB hypertable (migration 0013)
--   mlflow   the MLflow tracking server's backend store (runs and the model registry)
--   prefect  the Prefect server's database
CREATE DATABASE fks;
CREATE DATABASE mlflow;
CREATE DATABASE prefect;
