//! The tables DataFusion plans models against: one schema provider per SQL schema (`public`
//! for models, one per source group), holding only Arrow schemas. Planning one model may need
//! extra columns on its inputs (pseudo columns it uses, window bounds on the windowed stream);
//! those go into an overlay set for that model alone.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::datasource::empty::EmptyTable;
use datafusion::error::Result;

#[derive(Debug, Default)]
pub struct RelationSchema {
    tables: RwLock<BTreeMap<String, SchemaRef>>,
    overlay: RwLock<BTreeMap<String, SchemaRef>>,
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

impl RelationSchema {
    pub fn insert(&self, name: &str, schema: SchemaRef) {
        write(&self.tables).insert(name.to_string(), schema);
    }

    pub fn get(&self, name: &str) -> Option<SchemaRef> {
        let overlaid = read(&self.overlay).get(name).cloned();
        overlaid.or_else(|| read(&self.tables).get(name).cloned())
    }

    pub fn set_overlay(&self, name: &str, schema: SchemaRef) {
        write(&self.overlay).insert(name.to_string(), schema);
    }

    pub fn clear_overlay(&self) {
        write(&self.overlay).clear();
    }

    pub fn names(&self) -> Vec<String> {
        read(&self.tables).keys().cloned().collect()
    }
}

#[async_trait]
impl SchemaProvider for RelationSchema {
    fn table_names(&self) -> Vec<String> {
        self.names()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        Ok(self.get(name).map(|s| Arc::new(EmptyTable::new(s)) as Arc<dyn TableProvider>))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}
