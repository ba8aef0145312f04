"""Hand-written eviction policies and prefetchers, installed as ``kvgym.baselines``.

Importing this package imports every module in it, and each registers its policies and
prefetchers by name (``@register_policy``): adding a policy is adding one file here.
"""

import importlib
import pkgutil

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
    importlib.import_module(f"{__name__}.{_info.name}")
