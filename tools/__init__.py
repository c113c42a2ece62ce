"""Dev-only tools of the broke checkout (environment checks, router data builders); not in the wheel."""
