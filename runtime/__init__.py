"""The torch-free runtime, the foundation a deployment machine installs: model directories on CPU inference
engines, for images, videos and batch jobs.

It imports nothing from the calibration core or the exporter (they import its shared definitions: errors,
atomic writes, complexity, cells, the cheap rung, the manifest); only its engines/ subpackage imports an engine
library.

    import runtime
    with runtime.load() as sr:   # the bundled model
        hr = sr.upscale(lr)

load, SuperResolver, Run and UserError come from runtime.api, imported on first use so that a module such
as runtime.manifest can be used without an engine library being loaded.
"""
_API = ("load", "SuperResolver", "Run", "UserError", "DEFAULT_MODEL")


def __getattr__(name: str):
    if name in _API:
        from . import api
        return getattr(api, name)
    raise AttributeError(f"module 'runtime' has no attribute {name!r}")


__all__ = list(_API)
