# Ferry: `just dev` runs it, `just test` tests it. Recipes read the environment and `.env`.
set dotenv-load

# uv compiles the installed packages' bytecode (and each uv command checks it is up to
# date, about half a second): a process imports them in about 2 s instead of compiling
# them from source at each start (PYTHONDONTWRITEBYTECODE, set on some machines, stops
# Python from keeping what it compiled)
export UV_COMPILE_BYTECODE := "1"

# list the recipes
default:
    @just --list

# run Ferry in one process on the embedded default (SQLite + in-process broker) at :8000
[no-exit-message]
dev:
    uv run --frozen --no-dev python -m ferry.serve --embedded

# serve the API under uvicorn on HOST:PORT (default 127.0.0.1:8000)
api:
    uv run --frozen --no-dev python -m ferry.serve

# run a Dramatiq worker for the actors against REDIS_URL (WORKER_PROCESSES x WORKER_THREADS)
worker:
    uv run --frozen --no-dev dramatiq actors --processes ${WORKER_PROCESSES:-1} --threads ${WORKER_THREADS:-32}

# apply the database migrations to DATABASE_URL
migrate:
    uv run --frozen --no-dev python -m ferry.migrate

# install everything and run the whole test suite (needs PostgreSQL and Redis)
test *args:
    uv sync --frozen
    uv run --frozen pytest {{args}}

# ruff, mypy and the dependency rule (import-linter)
lint:
    uv sync --frozen
    uv run --frozen ruff check .
    uv run --frozen ruff format --check .
    uv run --frozen mypy
    uv run --frozen lint-imports

# format the code
fmt:
    uv run --frozen ruff format .
    uv run --frozen ruff check --fix .

# benchmarks (not tests): prints tables with ratios against baselines run alongside
bench *args:
    uv sync --frozen
    uv run --frozen python -m bench {{args}}

# docker compose: postgres, redis, api x2, worker x2, nginx on :8080
up:
    docker compose up --build -d

down:
    docker compose down

# the compose topology natively: nginx on STACK_PORT (8080) before 2 API processes, 2 workers
stack:
    uv sync --frozen
    uv run --frozen python infra/stack.py
