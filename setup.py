"""CANAO: compiler-aware optimization of Transformer models on TVM Relax.

The top-level folders fusion/, nas/, codegen/ and android_runner/ are installed under the one
``canao`` namespace (``canao.fusion`` ...) so that generic names never land in site-packages.
"""
from setuptools import setup

SUBPACKAGES = {
    "canao.fusion": "fusion",
    "canao.nas": "nas",
    "canao.codegen": "codegen",
    "canao.android_runner": "android_runner",
    "canao.configs": "configs",
}


def _find(root_pkg, root_dir):
    """Every package below root_dir, named under root_pkg (setuptools' find_packages per mapping)."""
    import os

    found = {}
    for dirpath, dirnames, filenames in os.walk(root_dir):
        dirnames[:] = [d for d in dirnames if not d.startswith((".", "__"))]
        if "__init__.py" in filenames:
            rel = os.path.relpath(dirpath, root_dir)
            name = root_pkg if rel == "." else root_pkg + "." + rel.replace(os.sep, ".")
            found[name] = dirpath
    return found


package_dir = {}
package_dir.update(_find("canao", "canao"))
for pkg, folder in SUBPACKAGES.items():
    package_dir.update(_find(pkg, folder))

setup(
    name="canao",
    version="0.1.0",
    description="Compiler-aware neural architecture optimization for Transformers on Apache TVM (Relax)",
    python_requires=">=3.10",
    packages=sorted(package_dir),
    package_dir=package_dir,
    package_data={"canao.configs": ["*.yaml"], "canao.nas": ["data/*.json"]},
    install_requires=[
        "apache-tvm==0.27.0.post1",
        # 0.1.15.post2 segfaults when saving/pickling TVM objects, which kills MetaSchedule.
        "apache-tvm-ffi==0.1.14.post1",
        # exact pin: the CPU wheel; an open range pulls a multi-GB CUDA build.
        "torch==2.13.0",
        "onnx>=1.16",
        "onnxscript>=0.5",
        "transformers>=4.45",
        "numpy>=1.26",
        "xgboost>=2.0",
        # the teacher's reference baselines (TF-IDF / frozen-embedding logistic regression)
        "scikit-learn>=1.3",
        "psutil",
        "cloudpickle",
        "tornado",
        "tqdm",
        "rich",
        "matplotlib",
        "pyyaml",
        "onnxruntime>=1.18",
        # e-graph engine of the polynomial rewriter; exact: its extractor reads egglog's serialized graph
        "egglog==13.2.0",
    ],
    extras_require={
        # LiteRT (TFLite/XNNPACK) runtime for the baseline engine
        # (the torch -> .tflite converter, litert-torch, pins typing-extensions below what TVM needs:
        # scripts/install.sh puts it in its own folder that canao calls in a subprocess)
        "baselines": ["ai-edge-litert==2.3.0"],
        # pytest-random-order: CI runs the suite in a shuffled (seeded) order, so a test that only
        # passes after another one (the MetaSchedule logger leak) shows up
        # pytest-xdist: the suite runs on two workers (`-n 2 --dist loadgroup`) to stay within
        # 30 minutes on a 2-core machine; emulated-device tests share one worker (tests/conftest.py)
        "test": ["pytest", "hypothesis", "pytest-random-order", "pytest-xdist"],
    },
    entry_points={"console_scripts": ["canao=canao.cli:main"]},
)
