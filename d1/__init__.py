"""Everything D1: payload models, the API client, the callback receiver and the sandbox."""
