//! The ALB's identity token as the gateway verifies it, against a real key endpoint.

use gateway::identity::{Identity, Rejected};
use gateway::testing::{claims, now, AlbSigner, KeyServer};
use gateway::{PublicKeys, Verifier};

const ALB_ARN: &str = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/gw/1";

async fn verifier(signer: &AlbSigner) -> (Verifier, KeyServer) {
    let keys = KeyServer::start(&[signer]).await.unwrap();
    (Verifier::new(ALB_ARN, PublicKeys::new(keys.url())), keys)
}

fn user(sub: &str) -> Result<Identity, Rejected> {
    Ok(Identity {
        user_id: sub.into(),
    })
}

#[tokio::test]
async fn an_alb_token_verifies_over_its_padded_segments() {
    let signer = AlbSigner::generate("kid-1");
    let (verifier, _keys) = verifier(&signer).await;
    for sub in ["a", "ab", "abc", "abcd", "user-with-a-longer-id"] {
        let token = signer.token(ALB_ARN, sub);
        assert!(token.contains('='), "{token}");
        assert_eq!(verifier.verify(&token).await, user(sub));
    }
}

#[tokio::test]
async fn stripping_the_padding_breaks_the_albs_signature() {
    // Why the signature is checked over the segments as received: the ALB signs them
    // padded, so a JWT library handed the token without its padding refuses it.
    let signer = AlbSigner::generate("kid-1");
    let (verifier, _keys) = verifier(&signer).await;
    let mut stripped = 0;
    for sub in ["a", "ab", "abc", "abcd"] {
        let token = signer.token(ALB_ARN, sub);
        let segments: Vec<&str> = token.split('.').collect();
        if !segments[0].ends_with('=') && !segments[1].ends_with('=') {
            continue;
        }
        stripped += 1;
        let unpadded: Vec<&str> = segments.iter().map(|s| s.trim_end_matches('=')).collect();
        assert_eq!(
            verifier.verify(&unpadded.join(".")).await,
            Err(Rejected::Signature)
        );
    }
    assert!(stripped > 0);
}

#[tokio::test]
async fn a_standard_unpadded_token_verifies_too() {
    let signer = AlbSigner::generate("kid-1");
    let (verifier, _keys) = verifier(&signer).await;
    let exp = now() + 60;
    let token = signer.sign_unpadded(&signer.header(ALB_ARN, exp), &claims("u-1", exp));
    assert!(!token.contains('='));
    assert_eq!(verifier.verify(&token).await, user("u-1"));
}

#[tokio::test]
async fn expiry_is_checked_with_five_seconds_of_leeway() {
    let signer = AlbSigner::generate("kid-1");
    let (verifier, _keys) = verifier(&signer).await;
    let exp = 1_700_000_000;
    let token = signer.sign(&signer.header(ALB_ARN, exp), &claims("u-1", exp));
    assert_eq!(verifier.verify_at(&token, exp + 5).await, user("u-1"));
    assert_eq!(
        verifier.verify_at(&token, exp + 6).await,
        Err(Rejected::Expired)
    );
    let header_only = signer.sign(&signer.header(ALB_ARN, exp), &claims("u-1", exp + 600));
    assert_eq!(
        verifier.verify_at(&header_only, exp + 6).await,
        Err(Rejected::Expired)
    );
}

#[tokio::test]
async fn each_kind_of_bad_token_is_named_for_the_log() {
    let signer = AlbSigner::generate("kid-1");
    let (verifier, keys) = verifier(&signer).await;
    let exp = now() + 60;
    let other = AlbSigner::generate("kid-2");
    let mut header = signer.header(ALB_ARN, exp);
    header["alg"] = "ES384".into();
    assert_eq!(
        verifier
            .verify(&signer.sign(&header, &claims("u", exp)))
            .await,
        Err(Rejected::Algorithm)
    );
    assert_eq!(
        verifier
            .verify(&signer.token(
                "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/gw/2",
                "u"
            ))
            .await,
        Err(Rejected::Signer)
    );
    assert_eq!(
        verifier.verify(&other.token(ALB_ARN, "u")).await,
        Err(Rejected::UnknownKey)
    );
    // A key served later is fetched once the retry period has passed, not before.
    keys.add(&other);
    assert_eq!(
        verifier.verify(&other.token(ALB_ARN, "u")).await,
        Err(Rejected::UnknownKey)
    );
    assert_eq!(keys.hits("kid-2"), 1);
    let forged = AlbSigner::generate("kid-1");
    assert_eq!(
        verifier.verify(&forged.token(ALB_ARN, "u")).await,
        Err(Rejected::Signature)
    );
    assert_eq!(verifier.verify("").await, Err(Rejected::Missing));
    assert_eq!(verifier.verify("a.b").await, Err(Rejected::Malformed));
    assert_eq!(verifier.verify("a.b.c.d").await, Err(Rejected::Malformed));
    assert_eq!(
        verifier
            .verify(&signer.sign(
                &signer.header(ALB_ARN, exp),
                &serde_json::json!({"sub": "", "exp": exp})
            ))
            .await,
        Err(Rejected::NoSubject)
    );
    assert_eq!(
        verifier
            .verify(&signer.sign(
                &signer.header(ALB_ARN, exp),
                &serde_json::json!({"sub": "u"})
            ))
            .await,
        Err(Rejected::Malformed)
    );
}
