"""metarl's learners (installed as ``metarl.agents``)."""
