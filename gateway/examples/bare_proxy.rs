use async_trait::async_trait;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;
struct P(String);
#[async_trait]
impl ProxyHttp for P {
    type CTX = ();
    fn new_ctx(&self) {}
    async fn upstream_peer(&self, _s: &mut Session, _c: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(
            self.0.as_str(),
            false,
            String::new(),
        )))
    }
}
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let conf = ServerConf {
        threads: a[3].parse().unwrap(),
        ..ServerConf::default()
    };
    let mut s = Server::new_with_opt_and_conf(None, conf);
    s.bootstrap();
    let mut p = pingora::proxy::http_proxy_service(&s.configuration, P(a[2].clone()));
    p.add_tcp(&a[1]);
    s.add_service(p);
    s.run_forever();
}
