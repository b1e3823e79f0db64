//! Public IPs of task network interfaces. The only use of EC2: kept behind the `ec2`
//! feature so that only the functions that resolve IPs link the (large) EC2 SDK.

use aws_sdk_ec2::Client;

use crate::from_sdk;
use session_core::error::Result;
use session_core::ports::Network;

#[derive(Clone, Debug)]
pub struct Ec2Network {
    client: Client,
}

impl Ec2Network {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    pub fn connect(sdk: &aws_config::SdkConfig) -> Self {
        Self::new(Client::new(sdk))
    }
}

impl Network for Ec2Network {
    async fn public_ip(&self, eni_id: &str) -> Result<Option<String>> {
        let out = self
            .client
            .describe_network_interfaces()
            .network_interface_ids(eni_id)
            .send()
            .await
            .map_err(|e| from_sdk("DescribeNetworkInterfaces", e))?;
        Ok(out
            .network_interfaces()
            .first()
            .and_then(|eni| eni.association())
            .and_then(|a| a.public_ip())
            .map(str::to_owned))
    }
}
