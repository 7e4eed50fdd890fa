"""S3 as AWS enforces it: moto checking every signature and every IAM policy.

The bridge reads the bucket three ways, each with exactly the permissions infra/README.md asks
Haltian for: as an IAM user holding the least-privilege policy, through a role assumed with an
external id, and keyless (AssumeRoleWithWebIdentity with a token from the managed identity).
"""

from __future__ import annotations

import itertools
import json
import os
import random
import re
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from shared import cli
from shared.demo import servers
from shared.demo.bucket import BucketSpec, legacy_key, legacy_schema, make_table, parquet_bytes, upload
from shared.demo.export import build_bucket
from shared.run import run_once
from tests.awsauth import allow_unsigned
from tests.promise import check_promise
from tests.stacks import EntraStack, Stack

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
ACCOUNT = "123456789012"  # moto's account
ORG = BucketSpec().organization
OTHER_ORG = "0b7e4c1a-2d3f-4e5a-8b6c-7d8e9f0a1b2c"
SMALL = dict(
    legacy_hours=2,
    v1_hours=2,
    legacy_measurements=["measurementCO2"],
    v1_measurements=["measurementCO2"],
    legacy_snapshots=["device"],
    v1_snapshots=["devices"],
    bad_files=False,
)
_names = itertools.count()


def readme_policy(bucket: str) -> str:
    """The least-privilege policy exactly as infra/README.md gives it, for this bucket and organization."""
    text = (ROOT / "infra" / "README.md").read_text()
    section = text[text.index("### AWS side") :]
    block = re.search(r"```json\n(.*?)```", section, re.DOTALL).group(1)
    policy = json.loads(block.replace("BUCKET", bucket).replace("ORG_ID", ORG))
    assert {s["Sid"] for s in policy["Statement"]} == {"ListOwnOrganizationOnly", "ReadOwnOrganizationOnly"}
    return json.dumps(policy)


class Aws:
    """moto with authentication on, and an administrator's client for test setup."""

    def __init__(self, server: servers.Server, key: dict[str, str]) -> None:
        self.server = server
        self.session = boto3.session.Session(
            aws_access_key_id=key["AccessKeyId"],
            aws_secret_access_key=key["SecretAccessKey"],
            region_name="eu-west-1",
        )
        self.iam = self.session.client("iam", endpoint_url=server.url)
        self.s3 = self.session.client("s3", endpoint_url=server.url)

    def user(self, name: str, policy: str) -> dict[str, str]:
        self.iam.create_user(UserName=name)
        self.iam.put_user_policy(UserName=name, PolicyName="bridge", PolicyDocument=policy)
        return self.iam.create_access_key(UserName=name)["AccessKey"]

    def role(self, name: str, trust: dict, policy: str) -> str:
        arn = self.iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
        self.iam.put_role_policy(RoleName=name, PolicyName="bridge", PolicyDocument=policy)
        return arn

    def allow_unsigned(self, requests: int) -> None:
        allow_unsigned(self.server, requests)

    def bucket_with_two_organizations(self) -> str:
        bucket = f"haltian-iam-{os.getpid()}-{next(_names)}"
        self.s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        upload(self.s3, bucket, build_bucket(BucketSpec(**SMALL)))
        upload(self.s3, bucket, build_bucket(BucketSpec(**SMALL, organization=OTHER_ORG)))
        at = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
        # Stored with Content-Encoding: gzip (as some uploaders label Parquet): copied as stored.
        body = parquet_bytes(make_table(legacy_schema("measurementCO2"), 5, at, random.Random(3)))
        self.s3.put_object(
            Bucket=bucket,
            Key=legacy_key(ORG, "measurementCO2", at.replace(hour=(at.hour + 1) % 24)),
            Body=body,
            ContentEncoding="gzip",
        )
        return bucket


@pytest.fixture(scope="session")
def aws() -> Iterator[Aws]:
    server = servers.moto_server(unauthenticated_actions=3).start()
    setup = boto3.client(
        "iam",
        endpoint_url=server.url,
        region_name="eu-west-1",
        aws_access_key_id=servers.FAKE_AWS_KEY_ID,
        aws_secret_access_key=servers.FAKE_AWS_SECRET,
    )
    setup.create_user(UserName="admin")  # the three unauthenticated actions: an administrator and its key
    setup.put_user_policy(
        UserName="admin",
        PolicyName="all",
        PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        ),
    )
    key = setup.create_access_key(UserName="admin")["AccessKey"]
    yield Aws(server, key)
    server.kill()  # in memory; a graceful stop waits for idle keep-alive connections


def lake_stack(aws: Aws, azurite: servers.Server, bucket: str) -> Stack:
    from azure.storage.blob import BlobServiceClient

    name = f"iam-{bucket[12:]}"
    container = BlobServiceClient.from_connection_string(
        servers.azurite_connection_string(azurite)
    ).create_container(name)
    return Stack(
        moto=aws.server, bucket=bucket, container_name=name, s3=aws.s3, container=container, azurite=azurite
    )


def use_key(monkeypatch: pytest.MonkeyPatch, key: dict[str, str]) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])


def client(service: str, aws: Aws, key: dict[str, str], region: str = "eu-west-1"):  # noqa: ANN201
    """A client signing with exactly this key (boto3's default session would keep the first it saw)."""
    return boto3.client(
        service,
        endpoint_url=aws.server.url,
        region_name=region,
        aws_access_key_id=key["AccessKeyId"],
        aws_secret_access_key=key["SecretAccessKey"],
    )


def test_an_iam_user_with_exactly_the_readme_policy_copies_its_organization_only(
    aws, azurite, monkeypatch
) -> None:
    bucket = aws.bucket_with_two_organizations()
    stack = lake_stack(aws, azurite, bucket)
    key = aws.user(f"reader-{bucket}", readme_policy(bucket))
    use_key(monkeypatch, key)

    reader = client("s3", aws, key)
    other = next(
        o["Key"] for o in aws.s3.list_objects_v2(Bucket=bucket, Prefix=f"parquet/{OTHER_ORG}/")["Contents"]
    )
    with pytest.raises(ClientError, match="AccessDenied"):  # the policy is enforced, not decoration
        reader.get_object(Bucket=bucket, Key=other)

    result = run_once(stack.bridge(HALTIAN_ORGANIZATION_ID=ORG))
    assert result.exit_code == 0 and result.failed == 0, result.summary()
    check_promise(stack, organization=ORG)  # byte for byte, the gzip-labelled object included
    gzipped = [
        o
        for o in result.outcomes
        if o.item.source.size
        and o.item.key.key.endswith(
            f"{(datetime.now(timezone.utc).hour + 1) % 24:02d}_measurementCO2.parquet"
        )
    ]
    assert gzipped and all(o.action == "published" for o in gzipped)


def test_a_role_assumed_with_an_external_id(aws, azurite, monkeypatch, capsys) -> None:
    bucket = aws.bucket_with_two_organizations()
    stack = lake_stack(aws, azurite, bucket)
    user, role_name = f"assumer-{bucket}", f"reader-{bucket}"
    role_arn = f"arn:aws:iam::{ACCOUNT}:role/{role_name}"
    # README: the key's own user needs only sts:AssumeRole on that role.
    key = aws.user(
        user,
        json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": role_arn}],
            }
        ),
    )
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/{user}"},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"sts:ExternalId": "haltian-external-id"}},
            }
        ],
    }
    assert aws.role(role_name, trust, readme_policy(bucket)) == role_arn
    use_key(monkeypatch, key)

    # The key alone reads nothing: only the role may.
    with pytest.raises(ClientError, match="AccessDenied"):
        client("s3", aws, key).list_objects_v2(Bucket=bucket, Prefix=f"parquet/{ORG}/")
    for name, value in stack.env(
        HALTIAN_ORGANIZATION_ID=ORG,
        HALTIAN_S3_ROLE_ARN=role_arn,
        HALTIAN_S3_EXTERNAL_ID="not-the-external-id",
    ).items():
        monkeypatch.setenv(name, value)
    assert cli.main(["run"]) == cli.EXIT_SETTINGS
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith(f"AWS STS refused AssumeRole of {role_arn} (AccessDenied)") and "EXTERNAL_ID" in err
    ), err

    result = run_once(
        stack.bridge(
            HALTIAN_ORGANIZATION_ID=ORG,
            HALTIAN_S3_ROLE_ARN=role_arn,
            HALTIAN_S3_EXTERNAL_ID="haltian-external-id",
        )
    )
    assert result.exit_code == 0 and result.failed == 0, result.summary()
    check_promise(stack, organization=ORG)


def test_keyless_through_assume_role_with_web_identity_and_the_managed_identity(
    aws, rig, monkeypatch
) -> None:
    bucket = aws.bucket_with_two_organizations()
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Principal": {"Federated": f"arn:aws:iam::{ACCOUNT}:oidc-provider/sts.windows.net/TENANT/"},
            }
        ],
    }
    role = aws.role(f"keyless-{bucket}", trust, readme_policy(bucket))
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)  # no AWS secret anywhere
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(rig.certificates.ca))
    container = rig.admin().create_container(f"keyless-{bucket[12:]}")
    stack = EntraStack(
        moto=aws.server,
        bucket=bucket,
        container_name=container.container_name,
        s3=aws.s3,
        container=container,
        rig=rig,
        monkeypatch=monkeypatch,
    )

    audience = "api://AzureADTokenExchange"
    before = len(rig.identity.tokens_for(audience))
    aws.allow_unsigned(1)  # the bridge's first request: the unsigned AssumeRoleWithWebIdentity
    bridge = stack.bridge(
        HALTIAN_ORGANIZATION_ID=ORG, HALTIAN_S3_ROLE_ARN=role, HALTIAN_S3_WEB_IDENTITY_AUDIENCE=audience
    )
    assert len(rig.identity.tokens_for(audience)) == before + 1  # the managed identity's token went to STS
    result = run_once(bridge)
    assert result.exit_code == 0 and result.failed == 0, result.summary()
    check_promise(stack, organization=ORG)


@pytest.mark.parametrize(
    "wrong, named",
    [
        ("secret", "SignatureDoesNotMatch"),
        ("key", "InvalidAccessKeyId"),
    ],
)
def test_a_wrong_key_or_secret_stops_at_once_on_one_plain_line(
    aws, azurite, monkeypatch, capsys, wrong, named
) -> None:
    bucket = aws.bucket_with_two_organizations()
    stack = lake_stack(aws, azurite, bucket)
    key = dict(aws.user(f"reader-{bucket}", readme_policy(bucket)))
    if wrong == "secret":
        key["SecretAccessKey"] = key["SecretAccessKey"][::-1]
    else:
        key["AccessKeyId"] = "AKIA" + "Q" * 16
    use_key(monkeypatch, key)
    for name, value in stack.env(HALTIAN_ORGANIZATION_ID=ORG).items():
        monkeypatch.setenv(name, value)
    assert cli.main(["run"]) == cli.EXIT_SETTINGS
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and named in err and f"s3://{bucket}/" in err, err
    assert "Error:" not in err and "Exception" not in err and "Traceback" not in err
    assert key["SecretAccessKey"] not in err
    assert not stack.lake_names()  # nothing was started


def test_a_wrong_region_is_named_once_before_anything_is_copied(aws, azurite, monkeypatch, capsys) -> None:
    bucket = aws.bucket_with_two_organizations()
    stack = lake_stack(aws, azurite, bucket)
    reader = aws.user(f"reader-{bucket}", readme_policy(bucket))
    use_key(monkeypatch, reader)
    s3 = client("s3", aws, reader, region="us-east-2")
    with pytest.raises(ClientError, match="403"):  # HeadBucket: s3:ListBucket without a prefix, not granted
        s3.head_bucket(Bucket=bucket)
    # The region comes from HeadBucket's x-amz-bucket-region, which moto sends only when HeadBucket
    # is allowed: the administrator's key plays a key that may.
    use_key(
        monkeypatch,
        {
            "AccessKeyId": aws.session.get_credentials().access_key,
            "SecretAccessKey": aws.session.get_credentials().secret_key,
        },
    )
    for name, value in stack.env(HALTIAN_ORGANIZATION_ID=ORG, HALTIAN_S3_REGION="us-east-2").items():
        monkeypatch.setenv(name, value)
    assert cli.main(["run"]) == cli.EXIT_SETTINGS
    err = capsys.readouterr().err.strip()
    assert err == f"bucket {bucket} is in eu-west-1, not in us-east-2: set HALTIAN_S3_REGION=eu-west-1"
    assert not stack.lake_names()
