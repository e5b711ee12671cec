"""The API's endpoints, one router per resource; ``imgrec.api.app`` includes them."""
