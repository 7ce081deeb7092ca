# The platform's image: the official Apache Airflow 3 image (pinned) plus Tesseract OCR, the
# project's pinned requirements and the `mlops` package. Every Airflow service of
# docker-compose.yml runs it; build with `docker compose build`.
FROM apache/airflow:3.3.2-python3.11

USER root
# Tesseract 5 with the English model, from Debian (the OCR engine of mlops.extraction.ocr).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends tesseract-ocr tesseract-ocr-eng \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/*

# The project lives in /opt/airflow/project (the working directory of every service, so the
# relative config/ paths resolve); owned by airflow, group 0 writable for any AIRFLOW_UID.
RUN mkdir -p /opt/airflow/project/data \
 && chown -R airflow:0 /opt/airflow/project \
 && chmod -R g+rwX /opt/airflow/project
USER airflow
WORKDIR /opt/airflow/project

# Dependencies first (cached while only the code changes). requirements.txt pins
# apache-airflow to the image's version, so pip never swaps the Airflow underneath.
COPY --chown=airflow:0 requirements.txt constraints.txt ./
RUN pip install --no-cache-dir -r requirements.txt -c constraints.txt

COPY --chown=airflow:0 . ./
# DVC inside a container without .git needs core.no_scm (treeverse/dvc #3474); this is
# `dvc config --local core.no_scm true`, written to .dvc/config.local: the image's copy only.
RUN pip install --no-cache-dir --no-deps . \
 && chmod -R g+rwX /opt/airflow/project \
 && if [ -d .dvc ]; then printf "[core]\n    no_scm = true\n" > .dvc/config.local; fi \
 && tesseract --version | head -n 1 \
 && python -c "import mlops.config, mlops.preflight"

ENV AIRFLOW__CORE__DAGS_FOLDER=/opt/airflow/project/dags \
    MLOPS_CONFIG_FILE=/opt/airflow/project/config/pipeline_config.yaml \
    OMP_THREAD_LIMIT=1
