"""The event contract (``events.contract``) and the event-filter language (``events.filters``)
that features and labels are declared with."""
