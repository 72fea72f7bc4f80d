"""The CDK app that deploys cogplane to AWS (`cdk deploy`). Reads shapes from cogplane.resources."""
