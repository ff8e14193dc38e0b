"""Creates the S3 bucket of Keelson's artifacts on moto, unless it exists.

Run with the Python that runs moto_server (moto depends on boto3): by
infra/prod/up.sh here, and in the motoserver/moto image by
docker-compose.yml. Environment: S3_ENDPOINT (http://127.0.0.1:5155),
S3_BUCKET (keelson-artifacts), AWS_REGION (us-east-1); moto takes any
credentials.
"""

import os

import boto3

endpoint = os.environ.get("S3_ENDPOINT", "http://127.0.0.1:5155")
bucket = os.environ.get("S3_BUCKET", "keelson-artifacts")
region = os.environ.get("AWS_REGION", "us-east-1")

s3 = boto3.client(
    "s3",
    endpoint_url=endpoint,
    region_name=region,
    aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "test"),
    aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "test"),
)
names = [b["Name"] for b in s3.list_buckets().get("Buckets", [])]
if bucket in names:
    print(f"bucket: s3://{bucket} exists on {endpoint}")
else:
    # us-east-1 takes no location constraint; every other region needs one.
    extra = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    s3.create_bucket(Bucket=bucket, **extra)
    print(f"bucket: s3://{bucket} created on {endpoint}")
