"""The packaged transfer methods, one subpackage each, every one a plugin of the engine.

Each declares its stages (`simreal.training.engine.method.Method`); the engine finds them by name
(`simreal.training.engine.method.BUILTIN`) exactly as it finds a user's method from `methods:`.
"""
