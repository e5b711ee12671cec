"""Models on disk: cards, versions, the active model, the index of exports and the serving choice."""
