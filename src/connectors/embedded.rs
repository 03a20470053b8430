//! The `embedded` target: librdkafka's mock broker, hosted in the streamctl process. The mock
//! cluster is not `Send`, so it lives on a thread of its own and takes commands over a channel.
//!
//! It keeps at most 5 MiB or 100,000 message sets per partition and silently drops older
//! records: fine for sample data, and the runtime reports any gap it sees in a stream.

use std::sync::mpsc;
use std::thread::JoinHandle;

enum Command {
    CreateTopic { name: String, partitions: i32, reply: mpsc::Sender<Result<(), String>> },
    Stop,
}

/// A running embedded broker; stops when dropped.
pub struct EmbeddedBroker {
    bootstrap: String,
    commands: mpsc::Sender<Command>,
    thread: Option<JoinHandle<()>>,
}

impl EmbeddedBroker {
    pub fn start() -> Result<EmbeddedBroker, String> {
        let (tx, rx) = mpsc::channel::<Command>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<String, String>>();
        let thread = std::thread::Builder::new()
            .name("embedded-broker".into())
            .spawn(move || {
                let cluster = match rdkafka::mocking::MockCluster::new(1) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("cannot start the embedded broker: {e}")));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(cluster.bootstrap_servers()));
                while let Ok(cmd) = rx.recv() {
                    match cmd {
                        Command::CreateTopic { name, partitions, reply } => {
                            let r = match cluster.create_topic(&name, partitions, 1) {
                                Err(e)
                                    if e.rdkafka_error_code()
                                        == Some(rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists) =>
                                {
                                    Ok(())
                                }
                                r => r.map_err(|e| format!("creating topic {name}: {e}")),
                            };
                            let _ = reply.send(r);
                        }
                        Command::Stop => break,
                    }
                }
            })
            .map_err(|e| format!("cannot start the embedded broker thread: {e}"))?;
        let bootstrap = ready_rx.recv().map_err(|_| "the embedded broker thread died".to_string())??;
        Ok(EmbeddedBroker { bootstrap, commands: tx, thread: Some(thread) })
    }

    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    pub fn create_topic(&self, name: &str, partitions: i32) -> Result<(), String> {
        let (reply, rx) = mpsc::channel();
        self.commands
            .send(Command::CreateTopic { name: name.to_string(), partitions, reply })
            .map_err(|_| "the embedded broker has stopped".to_string())?;
        rx.recv().map_err(|_| "the embedded broker has stopped".to_string())?
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
