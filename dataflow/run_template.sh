#!/usr/bin/env bash
# Launch one Flex Template job with its own service account.
#
#   PROJECT=... REGION=... BUCKET=gs://... VERSION=... dataflow/run_template.sh hourly JOB_NAME \
#       window_start=2026-11-22T10:00:00Z,window_end=2026-11-22T11:00:00Z,lake_root=gs://my-lake/ecommerce,...
#
# Parameters are the job's options (dataflow/<job>/metadata.json). The streaming job
# also accepts UPDATE=1 to replace the running job in place (same job name, same step labels).
set -euo pipefail
job="${1:?job: extract_orders|extract_dims|hourly|streaming}"
name="${2:?job name, e.g. ecommerce-hourly-20261122-10}"
params="${3:?comma-separated key=value parameters}"
: "${PROJECT:?}" "${REGION:?}" "${BUCKET:?}" "${VERSION:?}"
extra=()
if [[ -n "${UPDATE:-}" ]]; then extra+=(--update); fi
if [[ "${job}" == "streaming" ]]; then extra+=(--enable-streaming-engine); fi
gcloud dataflow flex-template run "${name}" \
  --project="${PROJECT}" --region="${REGION}" \
  --template-file-gcs-location="${BUCKET}/templates/${job}-${VERSION}.json" \
  --service-account-email="df-${job//_/-}@${PROJECT}.iam.gserviceaccount.com" \
  --temp-location="${BUCKET}/temp" --staging-location="${BUCKET}/staging" \
  --parameters="${params}" "${extra[@]}"
