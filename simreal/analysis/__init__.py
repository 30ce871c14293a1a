"""The analysis layer: transfer metrics, the result schema, reports, comparisons and plots."""
