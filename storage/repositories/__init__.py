"""The only code that writes SQL, one module per area; each public function owns its
transaction (or takes an open `Session` from a caller that owns one)."""
