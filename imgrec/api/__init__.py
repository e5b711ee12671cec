"""The REST face: FastAPI app, dependencies, state, middleware, errors, metrics, one router per resource."""
