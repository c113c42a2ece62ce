"""The dashboard at /ui, served by the front proxy through a narrow view of its live state."""
