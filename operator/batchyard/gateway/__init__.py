"""The AWS Batch API gateway: boto3 and the AWS CLI drive Batchyard unchanged.

`batchyard gateway` serves botocore's `batch` service model (2016-08-10, REST-JSON) and maps each
call onto the custom resources, writing specs as a user with kubectl would. Modules:

* `service`  - the botocore service model: routes (method + requestUri) and input validation;
* `errors`   - AWS error shapes;
* `auth`     - SigV4 verification with botocore's own signer, access keys from Secrets;
* `mapping`  - pure AWS request <-> custom resource translations (unit-tested, no I/O);
* `jobcache` - the watch-fed BatchJob cache that answers ListJobs and DescribeJobs;
* `http`     - the HTTP/1.1 server (keep-alive, Content-Length bodies, limits and timeouts);
* `server`   - the operations, and the request path from bytes to an answer.
"""
