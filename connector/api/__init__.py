"""HTTP blueprints. Views stay thin: parse, call the domain, serialize."""
