"""One module per resource type: its fields, its endpoints, and how a model becomes an API dict."""
