"""The torch-free runtime: model directories on ONNX Runtime, for images, videos and batch jobs.

    import runtime
    with runtime.load() as sr:   # the bundled model
        hr = sr.upscale(lr)

load, SuperResolver, Run and UserError come from runtime.api, imported on first use so that a module such
as runtime.manifest can be used without ONNX Runtime being loaded.
"""
_API = ("load", "SuperResolver", "Run", "UserError", "DEFAULT_MODEL")


def __getattr__(name: str):
    if name in _API:
        from . import api
        return getattr(api, name)
    raise AttributeError(f"module 'runtime' has no attribute {name!r}")


__all__ = list(_API)
