#!/usr/bin/env bash
# Build, push and register the Flex Templates of every job (or the ones named).
#
#   PROJECT=my-analytics-prod REGION=europe-west1 BUCKET=gs://my-dataflow-prod VERSION=2026-11-22 \
#     dataflow/build_templates.sh [extract_orders extract_dims hourly streaming]
#
# Writes gs://.../templates/<job>-<VERSION>.json; run them with dataflow/run_template.sh.
# PRINT_ONLY=1 validates the metadata files with gcloud and prints the template specs
# without building images or writing anything (works offline).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${PROJECT:?set PROJECT (e.g. my-analytics-prod)}" "${REGION:?set REGION (e.g. europe-west1)}"
: "${BUCKET:?set BUCKET (e.g. gs://my-dataflow-prod)}" "${VERSION:?set VERSION (image tag)}"
REPOSITORY="${REPOSITORY:-dataflow}"
JOBS=("${@:-extract_orders extract_dims hourly streaming}")
read -r -a JOBS <<<"${JOBS[*]}"

for job in "${JOBS[@]}"; do
  image="${REGION}-docker.pkg.dev/${PROJECT}/${REPOSITORY}/ecommerce-${job//_/-}:${VERSION}"
  template="${BUCKET}/templates/${job}-${VERSION}.json"
  if [[ -z "${PRINT_ONLY:-}" ]]; then
    docker build -f dataflow/Dockerfile --build-arg "JOB=${job}" -t "${image}" .
    docker push "${image}"
  fi
  gcloud dataflow flex-template build "${template}" \
    --image="${image}" \
    --sdk-language=PYTHON \
    --metadata-file="dataflow/${job}/metadata.json" \
    ${PRINT_ONLY:+--print-only}
done
