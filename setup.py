"""lslo-fairseq: Language-Specific LoRA for fairseq multilingual translation models.

fairseq itself is deliberately *not* a hard requirement here: users who built fairseq from source
keep their build. `pip install .[fairseq]` pulls a tested PyPI build, chosen by Python version
(docs/install.md; `scripts/check_python_versions.sh` installs and runs each):

- 3.11, 3.12: the ve-fairseq 0.12.3 wheel (cp311, cp312), with hydra-core 1.3.8, omegaconf 2.3.1;
- 3.13 and newer: fairseq-fixed 0.12.3.1, which has only an sdist for them: it compiles here
  (C++ and Cython) and imports torch in its setup.py, so install torch, cython, numpy, setuptools
  and wheel first and then this with `--no-build-isolation`. It pins hydra-core 1.3.2 and
  omegaconf 2.3.0. Only 3.13 is tested.
- 3.9, 3.10: no fairseq build for them on PyPI works (fairseq 0.12.2's own sdist is untested here),
  so the extra asks for the ve-fairseq wheel and pip stops with "No matching distribution found
  for ve-fairseq==0.12.3". pip cannot show a sentence of ours there: a PEP 517 build never learns
  which extras were asked for, and a marker can only drop a requirement. Use Python 3.11 or 3.12.
"""
import re

from setuptools import find_packages, setup

# The version: lslo_fairseq.__version__ (one place; CHANGELOG.md lists each release).
VERSION = re.search(r'^__version__ = "([^"]+)"', open("lslo_fairseq/__init__.py", encoding="utf-8").read(), re.M).group(1)

# Environment markers of the `fairseq` extra (see the docstring).
WHEEL_PYTHONS = 'python_version < "3.13"'   # ve-fairseq wheels: cp311, cp312
SDIST_PYTHONS = 'python_version >= "3.13"'  # fairseq-fixed sdist, built locally
FAIRSEQ_EXTRA = [
    f"ve-fairseq==0.12.3; {WHEEL_PYTHONS}",
    f"hydra-core==1.3.8; {WHEEL_PYTHONS}",
    f"omegaconf==2.3.1; {WHEEL_PYTHONS}",
    f"fairseq-fixed==0.12.3.1; {SDIST_PYTHONS}",
    f"hydra-core==1.3.2; {SDIST_PYTHONS}",  # fairseq-fixed pins these two exactly
    f"omegaconf==2.3.0; {SDIST_PYTHONS}",
]

setup(
    name="lslo-fairseq",
    version=VERSION,
    description="Language-Specific LoRA (LSLo) plugin for fairseq multilingual NMT",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.9",
    packages=find_packages(include=["lslo_fairseq", "lslo_fairseq.*"]),
    # csrc: the C++ loop of the grouped routing kernel, built on first use (lslo_fairseq/modules/native.py)
    package_data={"lslo_fairseq": ["resources/*", "resources/**/*", "modules/csrc/*.cpp"]},
    install_requires=[
        "torch>=2.0",
        "sentencepiece",
        "sacrebleu>=2.0",
        "numpy",
        "scipy",
        "matplotlib",
        "ninja",  # torch.utils.cpp_extension builds the grouped routing kernel's C++ loop with it
    ],
    extras_require={
        "fairseq": FAIRSEQ_EXTRA,
        # the tests exercise lslo-score --merge-search bayes too
        "test": ["pytest", "pytest-xdist", "bayesian-optimization>=3.4,<4", "import-linter"],
        # lslo-export hf/peft/ct2 (Hugging Face M2M100 + PEFT adapters, CTranslate2)
        "hf": ["transformers>=5,<6", "peft>=0.21", "ctranslate2>=4.5", "safetensors"],
        # lslo-score --merge-search bayes (Gaussian-process Bayesian optimisation of the merge ratio)
        "search": ["bayesian-optimization>=3.4,<4"],
        # the documentation site: mkdocs build --strict (mkdocs.yml, docs/)
        "docs": ["mkdocs>=1.6,<2", "mkdocs-material>=9.5,<10"],
    },
    entry_points={
        "console_scripts": [
            "lslo-params=lslo_fairseq.cli.params:main",
            "lslo-score=lslo_fairseq.cli.score:main",
            "lslo-demo=lslo_fairseq.cli.demo:main",
            "lslo-plot=lslo_fairseq.cli.plot:main",
            "lslo-lens=lslo_fairseq.cli.lens:main",
            "lslo-export=lslo_fairseq.cli.export:main",
            "lslo-prepare-flores=lslo_fairseq.cli.prepare_flores:main",
        ]
    },
)
