"""Check that the S3 server at $AWS_ENDPOINT_URL honours conditional PUTs.

atomwrite's object-store backend relies on them: create-only writes and version
claims use `If-None-Match: *`, the `latest` pointer moves with `If-Match: ETAG`.
A server that ignores either header would silently turn a lost race into an
overwrite, so this runs before the suite and fails loudly.
"""
import os
import sys

import boto3
from botocore.exceptions import ClientError

bucket = sys.argv[1]
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
key = "atomwrite-conditional-check/k"


def status(fn):
    try:
        fn()
        return 200
    except ClientError as e:
        return int(e.response["ResponseMetadata"]["HTTPStatusCode"])


failures = []
s3.delete_object(Bucket=bucket, Key=key)
r = s3.put_object(Bucket=bucket, Key=key, Body=b"one", IfNoneMatch="*")
etag1 = r["ETag"]
st = status(lambda: s3.put_object(Bucket=bucket, Key=key, Body=b"two", IfNoneMatch="*"))
if st not in (409, 412):
    failures.append(f"If-None-Match: * on existing key returned {st}, expected 412")
body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
if body != b"one":
    failures.append(f"create-only PUT overwrote the object: {body!r}")
st = status(lambda: s3.put_object(Bucket=bucket, Key=key, Body=b"three", IfMatch='"0123456789abcdef0123456789abcdef"'))
if st != 412:
    failures.append(f"If-Match with a wrong ETag returned {st}, expected 412")
r = s3.put_object(Bucket=bucket, Key=key, Body=b"four", IfMatch=etag1)
body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
if body != b"four":
    failures.append(f"If-Match with the right ETag did not update: {body!r}")
st = status(lambda: s3.put_object(Bucket=bucket, Key=key, Body=b"five", IfMatch=etag1))
if st != 412:
    failures.append(f"If-Match with a stale ETag returned {st}, expected 412")
st = status(lambda: s3.put_object(Bucket=bucket, Key=key + "-absent", Body=b"x", IfMatch=etag1))
if st not in (404, 412):
    failures.append(f"If-Match on a missing key returned {st}, expected 412 or 404")
s3.delete_object(Bucket=bucket, Key=key)

if failures:
    for f in failures:
        print("conditional-put check FAILED:", f, file=sys.stderr)
    sys.exit(1)
print("conditional-put check: If-None-Match and If-Match are honoured")
