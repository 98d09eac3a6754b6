"""Operating the server: Prometheus metrics (`metrics`), structured logs with request ids (`logging`) and the
middleware that ties both to each HTTP request (`middleware`)."""
