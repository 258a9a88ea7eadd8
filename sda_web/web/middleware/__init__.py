"""The app's pure ASGI middlewares: who may use it (`access`), what browsers must enforce
(`security_headers`), gzip for text (`compression`)."""
